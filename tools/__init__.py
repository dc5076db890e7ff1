"""Tools beside the package: the import-linter contract type, output fingerprints.

A regular package, so ``lint-imports`` (run from the repository root) finds
``tools.import_contracts`` even where an installed distribution ships a ``tools`` package.
"""
