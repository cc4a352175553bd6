"""The app's mail sender: SMTP when `RCMS_SMTP_HOST` is set, else the log."""

from __future__ import annotations

from realtime_cms.mail import LogMailSender, SmtpMailSender, mail_sender_for
from tests.support.harness import make_settings


def test_the_log_sender_is_the_default() -> None:
    assert isinstance(mail_sender_for(make_settings("sqlite+aiosqlite:///x.db")), LogMailSender)


def test_smtp_is_chosen_when_a_host_is_set() -> None:
    settings = make_settings(
        "sqlite+aiosqlite:///x.db", smtp_host="mail.example.com", smtp_port=2525, smtp_from="a@b.c"
    )
    sender = mail_sender_for(settings)
    assert isinstance(sender, SmtpMailSender)
    assert (sender.host, sender.port, sender.sender) == ("mail.example.com", 2525, "a@b.c")
