"""login_throttles: login attempts per client address and per account

Revision ID: 0003_login_throttles
Revises: 0002_refresh_family_revoked
Create Date: 2026-12-02 00:10:00.000000

Issue 11 item 4: the per-account lockout (users.failed_logins / locked_until) is replaced by
short fixed windows per client address and per email, known or not (login_throttle.py).

Expand/contract: a new table only.  users.failed_logins and users.locked_until stay: the
previous release still reads and writes them during the deploy; a later release drops them.
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_login_throttles'
down_revision = '0002_refresh_family_revoked'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('login_throttles',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('window_start', sa.DateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_login_throttles'))
    )
    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.create_index('ix_login_throttles_window_start', ['window_start'], unique=False)


def downgrade():
    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.drop_index('ix_login_throttles_window_start')

    op.drop_table('login_throttles')
