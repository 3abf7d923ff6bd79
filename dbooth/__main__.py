"""``python -m dbooth``: the same as the ``dbooth`` command."""

from dbooth.cli.app import main

if __name__ == "__main__":
    main()
