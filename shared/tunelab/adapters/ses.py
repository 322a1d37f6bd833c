"""Emails through SES v2 (`application.ports.Notifier`): `SendEmail` as a Simple message (subject,
text and HTML bodies, UTF-8) from the deployment's verified sender, with its configuration set when
there is one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.adapters.aws_errors import aws_call
from tunelab.domain.notifications import Email

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

CHARSET = "UTF-8"


class Notifier:
    """Sends emails through SESv2 from the verified sender."""

    def __init__(self, client: SESV2Client, *, sender: str, configuration_set: str | None = None) -> None:
        self.client = client
        self.sender = sender
        self.configuration_set = configuration_set

    def send(self, email: Email) -> str:
        """Send `email`; its SES message id. Raises the domain's errors (transient ones retryable)."""
        request: dict[str, object] = {
            "FromEmailAddress": self.sender,
            "Destination": {"ToAddresses": [email.to]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": email.subject, "Charset": CHARSET},
                    "Body": {
                        "Text": {"Data": email.text, "Charset": CHARSET},
                        "Html": {"Data": email.html, "Charset": CHARSET},
                    },
                }
            },
            "EmailTags": [{"Name": "notification", "Value": email.kind}],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        with aws_call(f"Sending the '{email.kind}' email", permission="ses:SendEmail"):
            answer = self.client.send_email(**request)  # type: ignore[arg-type]
        return str(answer.get("MessageId", ""))
