import gc
import sys

# A supervisor's start imports gRPC, protobuf, cryptography and asyncio: ~10^5
# objects, over which the collector's generation-2 passes cost ~0.1 s of CPU
# before READY (a third of the start in a container). Off until the start is
# over: the supervisor freezes what the start made and turns it back on
# (main.collector_on). The fork server freezes its imports itself.
gc.disable()

if sys.argv[1:] == ["--fork-server"]:
    from openshell.supervisor.forkserver import main
else:
    from openshell.supervisor.main import main

main()
