"""The names the plugin's role objects are registered under in pytest's plugin manager."""

#: The plugin of a pytest process that runs tests (a plain session, a pytest-xdist worker).
PARENT = "memray_isolate_manager"
#: The plugin that reports the run (a plain session, the pytest-xdist controller).
REPORTER = "memray_isolate_reporter"
#: The plugin of a test's child process, whatever started it.
CHILD = "memray_isolate_child"
#: The plugin of a pytest session started to run isolated tests (a spawned child, the forkserver).
CHILD_SESSION = "memray_isolate_child_session"
#: The plugin that takes over pytest-timeout's timer for isolated tests.
PYTEST_TIMEOUT = "memray_isolate_timeout"
#: The plugin that hands pytest-xdist's workers the run's file prefix.
XDIST = "memray_isolate_xdist"
#: The plugins a forked child leaves behind: the parent's work is not its own.
PARENT_ONLY = (PARENT, REPORTER)
