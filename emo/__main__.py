"""``python -m emo`` runs the command line."""

from emo.cli import main

if __name__ == "__main__":
    main()
