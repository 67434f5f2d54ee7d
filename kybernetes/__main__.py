from kybernetes.cli.main import main

main()
