"""`python -m handlers` is the `realtime-cms` command."""

from handlers.cli import main

main()
