"""Strategy `mitogen_linear`: Ansible's linear strategy run over Mitogen.

The implementation is the `mitogen` package of the tool environment
(requirements/tools.in); this file only makes it loadable from the strategy
path that ansible.cfg sets, whatever the virtualenv's Python version. Mitogen
keeps one Python interpreter per host and user for the whole run and sends it
each module as a function call, instead of starting Python and unpacking the
module on the host for every task (plugins/README.md has the figures).

Back to plain Ansible for one run: ANSIBLE_STRATEGY=linear ansible-playbook ...
"""
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401  pylint: disable=unused-import
