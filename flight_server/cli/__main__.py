from arrowroot.flight_server.cli.main import main

main()
