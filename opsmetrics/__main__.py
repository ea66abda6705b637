from opsmetrics.cli.main import main

main()
