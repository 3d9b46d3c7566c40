"""Stand-in for python-multilib (not packaged for Debian): kojid imports it at start and
uses it only in distRepo tasks, which the end-to-end test does not run."""
