"""The other reference: Django + django-allauth, as teams deploy it (see settings.py)."""
