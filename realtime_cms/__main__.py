"""`python -m realtime_cms` is the `realtime-cms` command."""

from realtime_cms.cli import main

main()
