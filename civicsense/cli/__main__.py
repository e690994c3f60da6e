"""`python -m civicsense.cli`: the same command line as the `civicsense` console script."""

from civicsense.cli.app import main

if __name__ == "__main__":
    main()
