"""``python -m spotdet`` runs the CLI."""

from spotdet.cli.main import main

main()
