"""The `sg3probe` command line; every command lives in its own module and is added in main.py."""
