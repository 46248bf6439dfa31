import sys

if sys.argv[1:] == ["--spare"]:
    from openshell.supervisor.spare import main
else:
    from openshell.supervisor.main import main

main()
