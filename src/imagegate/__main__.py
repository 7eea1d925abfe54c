from imagegate.cli.main import main

main()
