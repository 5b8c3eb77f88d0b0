"""The data-quality gate: tables measured from the release documents, and GX suites on them."""
