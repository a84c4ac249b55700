"""Running a test's call in a child process: the parent's side (fork, forkserver, spawn, supervising) and the child's."""
