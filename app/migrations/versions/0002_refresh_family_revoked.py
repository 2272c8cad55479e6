"""refresh_tokens: index (family_id, revoked_at) for the per-request session check

Revision ID: 0002_refresh_family_revoked
Revises: 0001_initial
Create Date: 2026-12-01 23:45:00.000000

Issue 11 item 2: every request with an access token bound to a session (claim ``sid``)
asks whether that refresh token family has a revoked token and an unrevoked one
(``RefreshToken.family_live``); this index answers both with one probe each, however
many rotated tokens the family holds.  It replaces ``ix_refresh_tokens_family_id`` (its
leading column serves the same lookups).

Expand/contract: indexes only; the previous release keeps working (it never names them).
On PostgreSQL the CREATE INDEX holds a lock blocking writes to refresh_tokens (logins and
refreshes, not reads) while it builds: seconds for millions of rows.
"""
from alembic import op


revision = '0002_refresh_family_revoked'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_refresh_tokens_family_revoked', ['family_id', 'revoked_at'], unique=False)
        batch_op.drop_index(batch_op.f('ix_refresh_tokens_family_id'))


def downgrade():
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_tokens_family_id'), ['family_id'], unique=False)
        batch_op.drop_index('ix_refresh_tokens_family_revoked')
