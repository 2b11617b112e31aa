"""Record where each saved secret may go, from the destination its record has today, and store PEM fields in their
canonical form (so a CA certificate pasted with CRLF line endings is the same certificate as one with LF)."""

import defender.fields
import defender.validators
from django.db import migrations, models


def normalise_certificates(apps, schema_editor):
    from defender.certificates import normalise_pem

    for name in ("Integration", "ProxyRule"):
        model = apps.get_model("defender", name)
        for pk, pem in model.objects.exclude(ca_certificate="").values_list("pk", "ca_certificate"):
            canonical = normalise_pem(pem)
            if canonical != pem:
                model.objects.filter(pk=pk).update(ca_certificate=canonical)


def record_destinations(apps, schema_editor):
    from defender.destinations import record_current_destinations

    record_current_destinations(apps.get_model)


class Migration(migrations.Migration):
    dependencies = [
        ("defender", "0008_alertfetch_clock_skew"),
    ]

    operations = [
        migrations.AddField(
            model_name="integration",
            name="client_secret_destination",
            field=models.JSONField(blank=True, default=dict, editable=False),
        ),
        migrations.AddField(
            model_name="proxyrule",
            name="password_destination",
            field=models.JSONField(blank=True, default=dict, editable=False),
        ),
        migrations.AlterField(
            model_name="integration",
            name="ca_certificate",
            field=defender.fields.CertificatesField(
                blank=True, validators=[defender.validators.validate_pem_certificates], verbose_name="CA certificate"
            ),
        ),
        migrations.AlterField(
            model_name="proxyrule",
            name="ca_certificate",
            field=defender.fields.CertificatesField(
                blank=True,
                help_text="PEM of the proxy's CA, for a TLS-intercepting proxy.",
                validators=[defender.validators.validate_pem_certificates],
                verbose_name="CA certificate",
            ),
        ),
        migrations.RunPython(normalise_certificates, migrations.RunPython.noop),
        migrations.RunPython(record_destinations, migrations.RunPython.noop),
    ]
