"""The reference: the seeds' app as a tutorial builds it. Flask + Flask-WTF + Flask-Mail, a
synchronous database driver, the same database and token scheme, and the reset email sent
inside the request with ``mail.send(msg)``, as seed 000 does. Served by gunicorn's sync
workers. It exists only to be measured against."""

from __future__ import annotations

import os
import re

import sqlalchemy as sa
from flask import Flask, flash, redirect, render_template_string, url_for
from flask_mail import Mail, Message
from flask_wtf import FlaskForm
from itsdangerous import URLSafeTimedSerializer
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Email

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ["SECRET_KEY"],
    MAIL_SERVER=os.environ["MAIL_SERVER"],
    MAIL_PORT=int(os.environ["MAIL_PORT"]),
    MAIL_DEFAULT_SENDER=os.environ["MAIL_DEFAULT_SENDER"],
)
mail = Mail(app)
# Same database; the synchronous driver a tutorial would use.
engine = sa.create_engine(
    re.sub(r"^postgresql\+asyncpg", "postgresql+psycopg", os.environ["DATABASE_URL"]),
    pool_size=10,
)

PAGE = """<!doctype html><title>Reset Password</title>
{% with messages = get_flashed_messages(with_categories=true) %}{% for c, m in messages %}
<div class="alert alert-{{ c }}">{{ m }}</div>{% endfor %}{% endwith %}
<form method="post">{{ form.hidden_tag() }}{{ form.email.label }} {{ form.email() }}
{{ form.submit(class="btn btn-outline-info") }}</form>"""


class RequestResetForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Email()])
    submit = SubmitField("Request Password Reset")


@app.route("/reset_password", methods=["GET", "POST"])
def reset_request() -> object:
    form = RequestResetForm()
    if form.validate_on_submit():
        with engine.connect() as connection:
            user = connection.execute(
                sa.text("SELECT id, email, reset_generation FROM users WHERE email_key = :key"),
                {"key": form.email.data.lower()},
            ).first()
        if user is not None:
            token = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="reset").dumps(
                {"uid": user.id, "gen": user.reset_generation}
            )
            link = url_for("reset_token", token=token, _external=True)
            msg = Message("Password Reset Request", recipients=[user.email])
            msg.body = f"To reset your password, visit the following link:\n{link}\n"
            msg.html = f'<p>To reset your password, <a href="{link}">click here</a>.</p>'
            mail.send(msg)  # the seed's way: SMTP inside the request
        flash("An email has been sent with instructions to reset your password.", "info")
        return redirect(url_for("login"))
    return render_template_string(PAGE, form=form)


@app.route("/reset_password/<token>")
def reset_token(token: str) -> str:
    return "reset form"


@app.route("/login")
def login() -> str:
    return "login"
