from django.apps import AppConfig


class DefenderConfig(AppConfig):
    name = "defender"
    verbose_name = "Defender ATP integrations"
