"""The graph's checkpoint tables, on PostgreSQL (on SQLite they live in var/checkpoints.sqlite).

Outside a transaction: the checkpointer builds its indexes concurrently, which PostgreSQL refuses inside one.
"""
from django.db import migrations


def create_checkpoint_tables(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from personas.checkpoints import postgres_setup

    postgres_setup(schema_editor.connection.settings_dict)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("personas", "0005_run_options_parent")]

    operations = [migrations.RunPython(create_checkpoint_tables, migrations.RunPython.noop, elidable=False)]
