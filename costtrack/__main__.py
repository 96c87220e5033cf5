"""`python -m costtrack ...`: the same CLI as the `costtrack` command."""

from .cli import main

if __name__ == "__main__":
    main()
