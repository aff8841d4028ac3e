from orthocli.cli import main

main()
