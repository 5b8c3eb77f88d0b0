"""``python -m tasks models``: the model store (issue 13 §3) -- import a folder, list, verify."""

from __future__ import annotations

from tasks.commands._common import add_action, add_group, path_arg, print_json, store_from_args


def register(sub, fmt) -> None:
    _, actions = add_group(
        sub, fmt, "models", metavar="{import,list,verify}",
        help="model weights in the store: import a folder, list, verify",
        description="Weights live in the object store under models/{name}/ with a manifest (every file's sha256 "
                    "and size, source, license, the class that loads them). Stages load them from there (cached "
                    "on local disk, checked) or from a mounted copy ($LEADER360V_MODELS_DIR); nothing is "
                    "downloaded from a hub.")
    pi = add_action(actions, fmt, "import", _cmd_import, help="copy a model folder into the store under NAME",
                    description="Copy every file of DIR (e.g. a Hugging Face snapshot a user downloaded once, or a "
                                "folder holding sam2.1_hiera_large.pt) into the store as models/NAME/, manifest "
                                "last: an interrupted import leaves no model behind, and a re-import replaces the "
                                "old version only once it is complete.")
    pi.add_argument("dir", type=path_arg, metavar="DIR", help="the folder holding the model's files")
    pi.add_argument("--name", required=True, help="model name in the store and in the configuration, "
                                                  "e.g. oneformer-ade20k-swin-large")
    pi.add_argument("--source", help="where the files came from (URL), recorded in the manifest")
    pi.add_argument("--license", help="the model's license, recorded in the manifest (e.g. apache-2.0)")
    pi.add_argument("--loader", help="the class that loads it (default: from config.json's architectures, or "
                                     "SAM2's builder for a sam2*.pt), e.g. transformers.OneFormerForUniversalSegmentation")
    add_action(actions, fmt, "list", _cmd_list, help="the models in the store (JSON)")
    pv = add_action(actions, fmt, "verify", _cmd_verify,
                    help="read every file back and compare it with the manifest (exit 7 on a mismatch)")
    pv.add_argument("name", nargs="?", metavar="NAME", help="one model (default: every model in the store)")


def _summary(m) -> dict:
    return {"name": m.name, "version": m.version, "loader": m.loader, "architecture": m.architecture,
            "files": len(m.files), "size_bytes": m.total_size, "source": m.source, "license": m.license,
            "imported_by": m.imported_by, "imported_at": m.imported_at}


def _cmd_import(args) -> int:
    from tasks.models import import_model

    m = import_model(store_from_args(args), args.dir, args.name, source=args.source, license=args.license,
                     loader=args.loader)
    print_json(_summary(m))
    return 0


def _cmd_list(args) -> int:
    from tasks.models import list_models

    print_json([_summary(m) for m in list_models(store_from_args(args))])
    return 0


def _cmd_verify(args) -> int:
    from tasks.models import ModelCorrupt, list_models, verify_model

    store = store_from_args(args)
    names = [args.name] if args.name else [m.name for m in list_models(store)]
    results, failed = [], []
    for name in names:
        try:
            verify_model(store, name)
            results.append({"name": name, "ok": True})
        except ModelCorrupt as exc:
            results.append({"name": name, "ok": False, "problems": exc.problems})
            failed.append(exc)
    print_json(results)
    if len(failed) == 1:
        raise failed[0]
    if failed:
        raise ModelCorrupt(", ".join(e.name for e in failed), [p for e in failed for p in e.problems],
                           f"the store {store.uri()}")
    return 0
