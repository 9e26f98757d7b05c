"""``python -m aeb_app``: the same as the ``aeb-app`` console script (GUI without a command)."""

from aeb_app.cli import entry_point

if __name__ == "__main__":
    entry_point()
