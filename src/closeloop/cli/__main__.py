from closeloop.cli.main import main

main()
