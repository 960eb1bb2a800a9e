"""The benchmark suites shipped with prunekit (TOML files, installed as package data)."""
