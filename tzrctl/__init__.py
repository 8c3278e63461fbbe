"""tzrctl: operate a TZR Host deployment made by playbooks/deploy.yml.

The deployment writes a state file (default ``/etc/tzr-host/tzrctl.json``)
that names its service manager, programs, settings files and folders;
tzrctl reads it and never guesses paths.
"""
