from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: they need the app registry (models) to be ready.
        from accounts import epoch, schema, social  # noqa: F401  (OpenAPI auth extension; guest-claim signal)
        from accounts.models import ApiKey, Membership, Organization, User

        # Rows that decide a governed call: writes to them invalidate every worker's memo (accounts.epoch).
        epoch.watch(User._meta.db_table, columns=("is_active", "is_guest", "guest_expires_at"), inserts=False)
        # Keys are found by an unguessable digest and never remembered as missing: new rows change nothing.
        key_columns = ("user_id", "digest", "scopes", "expires_at", "revoked_at", "audience")
        epoch.watch(ApiKey._meta.db_table, columns=key_columns, inserts=False)
        # OAuth access tokens act as their connection's key: a deleted (revoked) token holds from the next call.
        from oauth2_provider.models import get_access_token_model
        from oauth2_provider.signals import app_authorized

        from accounts.oauth_tokens import on_app_authorized  # it needs the models, ready only now

        epoch.watch(get_access_token_model()._meta.db_table, inserts=False)
        app_authorized.connect(on_app_authorized, dispatch_uid="accounts.oauth_tokens.connect")
        epoch.watch(Organization._meta.db_table)
        epoch.watch(Membership._meta.db_table)
        post_migrate.connect(epoch.install_triggers, sender=self, dispatch_uid="accounts.epoch.install_triggers")
