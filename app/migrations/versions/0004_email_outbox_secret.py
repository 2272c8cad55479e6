"""email_outbox.secret_encrypted: one-time tokens out of the mail bodies

Revision ID: 0004_email_outbox_secret
Revises: 0003_login_throttles
Create Date: 2026-12-03 09:00:00.000000

Issue 11 item 3: the outbox kept the verification and password reset links, tokens
included, in clear after sending.  Bodies are now stored with a placeholder and the token
Fernet-encrypted in ``secret_encrypted`` until the mail is sent (emails.py).

Data: the links of mails already sent are redacted (``?token=redacted``): their tokens are
no longer needed.  Mails not sent yet keep theirs (the worker redacts them once sent).

Expand/contract: a nullable column only.  The previous release never names it; its worker
may still send a new release's mail during the deploy, with the placeholder in the link
(a dead link: the user asks for another mail).
"""
import re

from alembic import op
import sqlalchemy as sa


revision = '0004_email_outbox_secret'
down_revision = '0003_login_throttles'
branch_labels = None
depends_on = None

_CLEAR_TOKEN = re.compile(r"(\?token=)[A-Za-z0-9_-]+")
_BATCH = 500


def upgrade():
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('secret_encrypted', sa.Text(), nullable=True))

    outbox = sa.table('email_outbox', sa.column('id', sa.BigInteger()), sa.column('template', sa.String()),
                      sa.column('status', sa.String()), sa.column('body_text', sa.Text()),
                      sa.column('body_html', sa.Text()))
    conn = op.get_bind()
    last_id = 0
    while True:
        rows = conn.execute(
            sa.select(outbox.c.id, outbox.c.body_text, outbox.c.body_html)
            .where(outbox.c.status == 'sent', outbox.c.template.in_(('verify_email', 'password_reset')),
                   outbox.c.id > last_id)
            .order_by(outbox.c.id).limit(_BATCH)
        ).all()
        if not rows:
            break
        for row_id, text, html in rows:
            conn.execute(outbox.update().where(outbox.c.id == row_id).values(
                body_text=_CLEAR_TOKEN.sub(r"\1redacted", text),
                body_html=_CLEAR_TOKEN.sub(r"\1redacted", html) if html is not None else None,
            ))
        last_id = rows[-1][0]


def downgrade():
    # the redacted links stay redacted (their tokens are gone)
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.drop_column('secret_encrypted')
