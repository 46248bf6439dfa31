module openshell.local/pause

go 1.22
