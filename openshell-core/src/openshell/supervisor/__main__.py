import sys

if sys.argv[1:] == ["--fork-server"]:
    from openshell.supervisor.forkserver import main
else:
    from openshell.supervisor.main import main

main()
