"""The test suite (a regular package: label-studio-converter installs a top-level `tests` package into
site-packages, which would otherwise shadow this folder for `from tests.support ...`)."""
