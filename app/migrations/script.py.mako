"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Expand/contract: a migration must keep the previous release working (add columns
nullable or with defaults, drop only what the previous release no longer uses).
One that cannot sets contract = True below: deploying it, or rolling back across it,
then needs fab deploy --contract (the maintenance page; app/README.md, "Migrations").
"""
from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}
# True: not backward compatible (scripts/build-release records it in the manifest).
contract = False


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    ${downgrades if downgrades else "pass"}
