"""Working with other plugins: pytest-xdist and pytest-timeout."""
