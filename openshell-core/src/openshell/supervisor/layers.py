"""The isolation layers every sandbox runs under (plugin names of kind ``isolation``).

Here rather than in ``main`` so that ``cleanup`` (also used by the compute
driver after a crash) can tear them down without importing the supervisor.
"""

#: isolation layers every sandbox needs; a missing one means the sandbox does not start
REQUIRED_LAYERS = ("netns", "landlock", "seccomp")
