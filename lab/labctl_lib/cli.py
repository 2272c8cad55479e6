"""labctl: the SocialSphere AI lab of production-shaped hosts.

Containers that boot systemd on a dedicated Docker network, reached by Ansible
over SSH at their own addresses exactly like production servers.  Python 3
standard library only.  See lab/README.md.

  labctl engine                      ensure the Docker engine is installed and running
                                     (and the host's inotify limits fit many systemd hosts)
  labctl cache                       ensure the lab package cache (apt-cacher-ng) runs
  labctl images [--distro D|all]     build base images (only when the recipe changed)
  labctl up [HOST...]                create/start/bootstrap hosts, write the inventory
  labctl add HOST...                 same as `up HOST...` (scale-out: app3, db3...)
  labctl remove HOST...              remove single lab hosts (scale-in)
  labctl stop HOST...                power hosts off, state kept (failure drills)
  labctl start HOST...               power them on again and wait until ready (= up HOST...)
  labctl inventory                   rewrite inventories/lab/hosts.yml from the running lab
  labctl status                      table of hosts, addresses, container and systemd state
  labctl info                        where the lab's app is reachable and how to log in
  labctl secret NAME                 print one lab secret (e.g. vault_app_admin_password)
  labctl ssh HOST [CMD...]           ssh to HOST as the deploy user
  labctl exec HOST CMD...            docker exec into HOST (failure drills)
  labctl down                        remove the lab's containers, network and inventory
  labctl purge                       down + images + package cache + lab keys and vault
"""

import argparse
import signal
import sys

from .cache import cmd_cache
from .down import cmd_down, cmd_purge
from .engine import cmd_engine
from .images import cmd_images
from .inventory import cmd_inventory
from .settings import DISTROS, LAB_DISTRO
from .status import cmd_exec, cmd_info, cmd_secret, cmd_ssh, cmd_status, cmd_stop
from .up import cmd_remove, cmd_up
from .util import LabError


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `labctl status | head` ends quietly
    ap = argparse.ArgumentParser(prog="labctl", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("engine").set_defaults(func=cmd_engine)
    sub.add_parser("cache").set_defaults(func=cmd_cache)
    p = sub.add_parser("images")
    p.add_argument("--distro", default=LAB_DISTRO, choices=[*DISTROS, "all"])
    p.set_defaults(func=cmd_images)
    for n in ("up", "add", "start"):
        p = sub.add_parser(n)
        p.add_argument("hosts", nargs="*" if n == "up" else "+")
        p.set_defaults(func=cmd_up)
    p = sub.add_parser("stop")
    p.add_argument("hosts", nargs="+")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("remove")
    p.add_argument("hosts", nargs="+")
    p.set_defaults(func=cmd_remove)
    sub.add_parser("inventory").set_defaults(func=cmd_inventory)
    sub.add_parser("status").set_defaults(func=cmd_status)
    sub.add_parser("info").set_defaults(func=cmd_info)
    p = sub.add_parser("secret")
    p.add_argument("name")
    p.set_defaults(func=cmd_secret)
    p = sub.add_parser("ssh")
    p.add_argument("host")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_ssh)
    p = sub.add_parser("exec")
    p.add_argument("host")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)
    sub.add_parser("down").set_defaults(func=cmd_down)
    sub.add_parser("purge").set_defaults(func=cmd_purge)
    args = ap.parse_args(argv)
    if args.command == "exec" and not args.cmd:
        ap.error("exec needs a command")
    try:
        args.func(args)
    except LabError as e:
        print(f"labctl: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
