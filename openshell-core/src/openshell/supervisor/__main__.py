from openshell.supervisor.main import main

main()
