"""Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEYS.

Rotation: put a new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after it), run this command, then remove the
old keys. All rows are rotated in one transaction: if any secret cannot be opened, nothing changes. The records of
where each secret may go are sealed again with the new key (the same destinations), so no secret must be retyped.
"""

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.template.defaultfilters import pluralize

from defender import destinations, encryption
from defender.fields import Ciphertext, EncryptedTextField


def encrypted_fields():
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield model, field


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the current first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        rotated, failures = 0, []
        with transaction.atomic():
            for model, field in encrypted_fields():
                # Named as its pages name it: most records by their name, a Test run by its title.
                label = "name" if any(f.name == "name" for f in model._meta.fields) else "title"
                rows = model.objects.exclude(**{field.attname: ""}).values_list("pk", label, field.attname)
                for pk, name, stored in rows.iterator():
                    where = f"{field.name} of {model._meta.verbose_name} {pk} ({name})"
                    try:
                        new_value = encryption.rotate(stored, where=where)
                    except encryption.DecryptionError as exc:
                        failures.append(str(exc))
                        continue
                    model.objects.filter(pk=pk).update(**{field.attname: Ciphertext(new_value)})
                    rotated += 1
            if failures:
                transaction.set_rollback(True)
                raise CommandError("Nothing was changed. " + " ".join(failures))
            destinations.reseal_all(apps.get_model)
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted {rotated} secret{pluralize(rotated)} with the current first key.")
        )
