from spillguard.cli.main import main

main()
