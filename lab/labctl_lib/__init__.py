"""labctl_lib: the code of lab/labctl (the executable entry point), one module per part
of the lab.  Python 3 standard library only.

Modules, each importing only those above it:

  settings    environment variables (LAB_*), paths, host kinds and addresses, image recipes
  util        LabError, log, run/docker, apt_install, lab host names
  engine      the Docker engine and the host's inotify limits (`labctl engine`)
  network     the lab's Docker network
  cache       the apt-cacher-ng package cache (`labctl cache`)
  images      debootstrap base images (`labctl images`)
  vault       lab secrets: SSH key and ansible-vault file (VAULT_VARS)
  containers  hosts as systemd containers: create, boot, bootstrap, wait for SSH; lock
  inventory   the generated inventory (host_vars, `labctl inventory`)
  up          `labctl up|add|start|remove`
  status      `labctl status|info|secret|ssh|exec|stop`
  down        `labctl down|purge`
  cli         the command line (argparse) and exit codes
"""
