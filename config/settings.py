"""Gatehouse settings, read from the environment and `.env` (django-environ)."""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost"]),
    CSRF_TRUSTED_ORIGINS=(list, []),
    MCP_ALLOW_PRIVATE_NETWORKS=(bool, False),
    MCP_MAX_SERVERS_PER_USER=(int, 25),
    MCP_GATEWAY_URL_POOLS=(list, []),
    MCP_HTTP_TIMEOUT=(float, 30.0),
    MCP_MAX_RESPONSE_BYTES=(int, 10 * 1024 * 1024),
    MCP_MAX_TOOLS=(int, 1000),
    MCP_MAX_TOOL_PAGES=(int, 100),
    MCP_DISCOVER_ON_SAVE=(bool, True),
    MCP_SESSION_IDLE_SECONDS=(int, 24 * 3600),
    MCP_SESSIONS_PER_USER=(int, 100),
    POLICY_CACHE_SECONDS=(int, 300),
    DB_SYNCHRONOUS_COMMIT=(bool, True),
    GUEST_TTL_HOURS=(int, 24 * 7),
    BEHIND_TLS_PROXY=(bool, False),
    LOG_LEVEL=(str, "INFO"),
)
# Real environment variables win over `.env` (read_env does not overwrite them).
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env("DEBUG")
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY is not set: run `make run` once to write .env, or export it.")

# Fernet keys, comma-separated: the first encrypts, every key decrypts (rotation).
FIELD_ENCRYPTION_KEY = [k.strip() for k in env("FIELD_ENCRYPTION_KEY", default="").split(",") if k.strip()]
if not FIELD_ENCRYPTION_KEY:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY is not set: run `make run` once to write .env, or export it.")

# API keys are stored as HMAC-SHA256 digests under this key (defaults to SECRET_KEY).
API_KEY_HMAC_KEY = env("API_KEY_HMAC_KEY", default=SECRET_KEY)

ALLOWED_HOSTS = env("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # allauth's security-key list uses it
    "rest_framework",
    "oauth2_provider",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.github",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.mfa",
    "accounts",
    "mcpsettings",
    "governance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.SecurityHeadersMiddleware",
    "config.middleware.AgentLaneMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "accounts.middleware.RejectNulMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.GuestExpiryMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.RequireMfaMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "governance.context_processors.nav",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if not env("DB_SYNCHRONOUS_COMMIT") and "postgresql" in DATABASES["default"]["ENGINE"]:
    # Opt-in only: a commit returns before its WAL is flushed, so a PostgreSQL crash (not a Gatehouse one)
    # can lose the last few hundred milliseconds of every commit: log rows and usage agents were already
    # answered for, and changes people were told were saved (a revoked key, a permission, a deleted token).
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["options"] = f"{options.get('options', '')} -c synchronous_commit=off".strip()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent readers and a writer without "database is locked" in dev.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://gatehouse")}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

# Sign-in with GitHub and OpenID Connect providers (django-allauth; accounts.social). Gatehouse keeps its own
# log-in and sign-up pages (email + password); allauth runs the providers' flows under /auth/.
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGOUT_ON_GET = False
SOCIALACCOUNT_ADAPTER = "accounts.social.SocialAdapter"
# Second factor for password (and provider) sign-in: TOTP apps and recovery codes (allauth.mfa); an org can
# require it of its owners and admins (Organization.settings["require_admin_mfa"], accounts.middleware).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = False  # security keys and passkeys as a second factor, not instead of a password
# WebAuthn needs https; browsers treat http://localhost as secure, and allauth must be told to accept it.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = DEBUG or env.bool("MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN", default=False)
MFA_TOTP_ISSUER = "Gatehouse"
MFA_ADAPTER = "accounts.social.MfaAdapter"
SOCIALACCOUNT_LOGIN_ON_GET = False  # a provider's sign-in starts with a POST (no cross-site log-in by link)
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # an email match never signs in to someone's account: link it first
SOCIALACCOUNT_QUERY_EMAIL = True
SOCIALACCOUNT_STORE_TOKENS = False  # Gatehouse needs who you are, never your provider tokens
SOCIALACCOUNT_PROVIDERS: dict = {}
if env("GITHUB_CLIENT_ID", default=""):
    SOCIALACCOUNT_PROVIDERS["github"] = {
        "APPS": [{"client_id": env("GITHUB_CLIENT_ID"), "secret": env("GITHUB_CLIENT_SECRET", default="")}],
        "SCOPE": ["read:user", "user:email"],
        "OAUTH_PKCE_ENABLED": True,
        **({"GITHUB_URL": env("GITHUB_URL")} if env("GITHUB_URL", default="") else {}),  # GitHub Enterprise
    }
# OIDC_PROVIDERS: a JSON list of {"id", "name", "server_url" (the issuer), "client_id", "secret", and optionally
# "join": {"domain": "acme.com", "org": "<org slug>", "role": "developer"}} (README: single sign-on).
OIDC_PROVIDERS = env.json("OIDC_PROVIDERS", default=[])
if OIDC_PROVIDERS:
    SOCIALACCOUNT_PROVIDERS["openid_connect"] = {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [
            {
                "provider_id": p["id"],
                "name": p.get("name", p["id"]),
                "client_id": p["client_id"],
                "secret": p.get("secret", ""),
                "settings": {"server_url": p["server_url"], "join": p.get("join")},
            }
            for p in OIDC_PROVIDERS
        ],
    }
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so unauthenticated API answers are 401 with `WWW-Authenticate: Bearer`.
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.permissions.HasScope",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["accounts.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Gatehouse API",
    "DESCRIPTION": "Control plane for MCP servers: settings, governed tool calls, approvals, logs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Approval statuses appear in two components (a list item and the detail view): one name for them.
    "ENUM_NAME_OVERRIDES": {"ApprovalStatusEnum": "governance.models.ApprovalStatus"},
}

# Gatehouse-specific settings.
MCP_ALLOW_PRIVATE_NETWORKS = env("MCP_ALLOW_PRIVATE_NETWORKS")
# This site's public address (https in production): the OAuth redirect URI and client metadata live under it.
GATEHOUSE_PUBLIC_URL = env("GATEHOUSE_PUBLIC_URL", default="")
MCP_MAX_SERVERS_PER_USER = env("MCP_MAX_SERVERS_PER_USER")
MCP_GATEWAY_URL_POOLS = env("MCP_GATEWAY_URL_POOLS")
MCP_HTTP_TIMEOUT = env("MCP_HTTP_TIMEOUT")
MCP_MAX_RESPONSE_BYTES = env("MCP_MAX_RESPONSE_BYTES")
MCP_MAX_TOOLS = env("MCP_MAX_TOOLS")
MCP_MAX_TOOL_PAGES = env("MCP_MAX_TOOL_PAGES")
# Discover tools right after a server is created or its connection settings change.
MCP_DISCOVER_ON_SAVE = env("MCP_DISCOVER_ON_SAVE")
# Sessions of MCP clients with /mcp: dropped after this much idleness; each user keeps at most this many.
MCP_SESSION_IDLE_SECONDS = env("MCP_SESSION_IDLE_SECONDS")
MCP_SESSIONS_PER_USER = env("MCP_SESSIONS_PER_USER")
GUEST_TTL = timedelta(hours=env("GUEST_TTL_HOURS"))
# Failed log-ins per (IP, email) and failed API keys per IP, per window.
LOGIN_RATE_LIMIT = (env.int("LOGIN_RATE_LIMIT", default=5), env.int("LOGIN_RATE_WINDOW", default=900))
API_KEY_RATE_LIMIT = (env.int("API_KEY_RATE_LIMIT", default=20), env.int("API_KEY_RATE_WINDOW", default=60))
API_KEY_LAST_USED_INTERVAL = timedelta(seconds=60)
# Each worker memoizes what decides a governed call (keys, policy, credentials, slugs), invalidated on the
# very next call after any change by database triggers (accounts.epoch); this is only a backstop age.
# 0 turns the memo off.
POLICY_CACHE_SECONDS = env("POLICY_CACHE_SECONDS")
# How long an approval request waits for a person before it expires.
APPROVAL_REQUEST_TTL_SECONDS = env.int("APPROVAL_REQUEST_TTL_SECONDS", default=3600)

# Gatehouse as the OAuth 2.1 authorization server of its own MCP endpoints (django-oauth-toolkit; README:
# "Connecting MCP clients with OAuth"): authorization code + PKCE S256 only, public clients registered
# dynamically (RFC 7591, rate-limited) or by a client ID metadata document (fetched SSRF-pinned), tokens
# bound to one endpoint (RFC 8707), short-lived access tokens, rotating refresh tokens, hashed at rest.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER = {
    "SCOPES": {"read": "See the tools you allow", "call": "Call those tools (your rules and approvals apply)"},
    "DEFAULT_SCOPES": ["read", "call"],
    "PKCE_REQUIRED": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": env.int("OAUTH_ACCESS_TOKEN_SECONDS", default=3600),
    "REFRESH_TOKEN_EXPIRE_SECONDS": env.int("OAUTH_REFRESH_TOKEN_SECONDS", default=30 * 86400),
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REQUEST_APPROVAL_PROMPT": "force",  # every authorization shows the consent page
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    "ALLOW_LOCALHOST_LOOPBACK": True,  # native clients' http://127.0.0.1:<any port>/ callbacks (RFC 8252)
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token"],
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["none", "client_secret_post", "client_secret_basic"],
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "DCR_ENABLED": True,
    "DCR_REGISTRATION_PERMISSION_CLASSES": ("accounts.oauth_tokens.RateLimitedRegistration",),
    "CIMD_ENABLED": True,
    "CIMD_METADATA_FETCHER": "mcpsettings.cimd.PinnedMetadataFetcher",
    "CIMD_REGISTRATION_PERMISSION_CLASSES": ("accounts.oauth_tokens.RateLimitedMetadataClients",),
    "OAUTH2_PROTECTED_RESOURCE_NAME": "Gatehouse MCP gateway",
}
# JWT for scripts (accounts.jwt_tokens; djangorestframework-simplejwt): short-lived access, rotating refresh.
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_ACCESS_SECONDS", default=900)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_REFRESH_SECONDS", default=86400)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "AUTH_HEADER_TYPES": ("Bearer",),
}
# Dynamic client registrations per IP per hour (anonymous, as MCP clients register before anyone signs in).
OAUTH_REGISTRATION_RATE_LIMIT = (env.int("OAUTH_REGISTRATION_RATE_LIMIT", default=20), 3600)

# Security headers and cookies; HSTS and secure cookies only where TLS is real.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if env("BEHIND_TLS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Behind BEHIND_TLS_PROXY: how many proxies append to X-Forwarded-For; the client is that many from the right.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1)
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    SESSION_COOKIE_NAME = env(
        "SESSION_COOKIE_NAME", default="__Host-sessionid" if SESSION_COOKIE_SECURE else "sessionid"
    )
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# HSTS preload is a commitment for the whole domain; operators opt in with SECURE_HSTS_PRELOAD=true.
# oauth2_provider.W008 (http redirect URIs): native MCP clients receive the code on http://127.0.0.1:<port>
# (RFC 8252); governance.agents.oauth_server refuses http for any other host.
SILENCED_SYSTEM_CHECKS = ["security.W021", "oauth2_provider.W008"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL")},
}
