"""Entra ID (Azure AD): OpenID discovery and the client-credentials token endpoints, v2.0 and v1.

Errors carry Microsoft's body (error, an `AADSTSnnnn:` description with Trace ID, Correlation ID and Timestamp
lines, error_codes, timestamp, trace_id, correlation_id, error_uri) and the status the real service uses.
Source: docs/microsoft-api.md (Entra ID).
"""

import base64
import re
import time
import uuid
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives import hashes

from . import scopes
from .reply import Reply, utc_now

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}

NOT_INSTALLED = (
    "This can happen if the application has not been installed by the administrator of the tenant or consented to by"
    " any user in the tenant. You might have sent your authentication request to the wrong tenant."
)


def error(status, error_name, code, message, correlation_id):
    trace_id = str(uuid.uuid4())
    timestamp = utc_now().strftime("%Y-%m-%d %H:%M:%SZ")
    description = (
        f"AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
    )
    body = {
        "error": error_name,
        "error_description": description,
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return Reply(status, body, {"x-ms-request-id": trace_id, "Cache-Control": "no-store, no-cache"})


def tenant_error(tenant, error_name, correlation_id):
    if not GUID.match(tenant) and "." not in tenant:
        return error(
            400,
            "invalid_request",
            900023,
            f"Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain.",
            correlation_id,
        )
    return error(
        400,
        error_name,
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the"
        " correct cloud. Check with your subscription administrator, this may happen if there are no active"
        " subscriptions for the tenant.",
        correlation_id,
    )


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AADSTS_ASSERTION_TYPE = 7000219
# Entra ID allows the assertion's times a few minutes of clock drift.
ASSERTION_SKEW = 300


def _thumbprint(certificate, header):
    """Base64url, unpadded: msal sends the padding, the JWT specifications leave it out, Entra ID takes both."""
    digest = hashes.SHA256() if header == "x5t#S256" else hashes.SHA1()  # noqa: S303 - x5t names, not checks
    return base64.urlsafe_b64encode(certificate.fingerprint(digest)).decode("ascii").rstrip("=")


def _stamp(value):
    if not isinstance(value, int | float):
        return str(value)
    return datetime.fromtimestamp(value, UTC).strftime("%m/%d/%Y %H:%M:%S")


class Entra:
    def __init__(self, simulator):
        self.simulator = simulator
        self.data = simulator.data

    def tenant(self, name):
        """The tenant's GUID when name is its GUID or one of its domains, else None."""
        if name.lower() in (self.data.tenant_id, self.data.tenant_domain.lower()):
            return self.data.tenant_id
        return None

    def openid_configuration(self, request, tenant, version):
        tenant_id = self.tenant(tenant)
        if tenant_id is None:
            return tenant_error(tenant, "invalid_tenant", request.correlation_id)
        base = f"{request.origin}/{tenant_id}"
        v2 = "/v2.0" if version == "2.0" else ""
        body = {
            "token_endpoint": f"{base}/oauth2{v2}/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery{v2}/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0" if v2 else f"https://sts.windows.net/{tenant_id}/",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2{v2}/authorize",
            "device_authorization_endpoint": f"{base}/oauth2{v2}/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2{v2}/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
        return Reply(200, body, {"Cache-Control": "max-age=86400, private"})

    def keys(self, request, tenant):
        if self.tenant(tenant) is None:
            return tenant_error(tenant, "invalid_tenant", request.correlation_id)
        return Reply(200, self.simulator.signer.jwks())

    def token(self, request, tenant, version):
        """The client-credentials grant: version "2.0" takes `scope`, version "1.0" takes `resource`."""
        form = request.form
        correlation_id = request.correlation_id
        tenant_id = self.tenant(tenant)
        if tenant_id is None:
            return tenant_error(tenant, "invalid_request", correlation_id)
        for parameter in ("grant_type", "client_id"):
            if not form.get(parameter):
                return self.missing(parameter, correlation_id)
        if form["grant_type"] != "client_credentials":
            return error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{form['grant_type']}'.",
                correlation_id,
            )
        client_id = form["client_id"]
        app = next((a for a in self.data.apps.values() if a.client_id == client_id.lower()), None)
        if app is None:
            return error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{self.data.tenant_name}'."
                f" {NOT_INSTALLED}",
                correlation_id,
            )
        if not form.get("client_secret") and not form.get("client_assertion"):
            return error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                correlation_id,
            )
        if form.get("client_assertion") and not form.get("client_secret"):
            refused = self.check_assertion(request, app, tenant, tenant_id, version)
            if refused is not None:
                return refused
        elif form.get("client_secret") != app.client_secret:
            return error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret"
                f" value, not the client secret ID, for a secret added to app '{app.client_id}'.",
                correlation_id,
            )
        elif app.secret_expired:
            return error(
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{app.client_id}' are expired. Visit the Azure portal to"
                " create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate"
                " credentials for added security: https://aka.ms/certCreds.",
                correlation_id,
            )
        if version == "2.0":
            resource = self.resource_from_scope(form.get("scope", ""), correlation_id)
        else:
            resource = self.resource_from_form(form.get("resource", ""), correlation_id)
        if isinstance(resource, Reply):
            return resource
        return self.issue(app, tenant_id, resource, version, request.origin)

    def check_assertion(self, request, app, tenant, tenant_id, version):
        """Verify a client assertion as Entra ID documents it (certificate credentials page): signed (RS256 or PS256)
        by a certificate registered on the app and named by x5t#S256 or x5t, for this token endpoint, issued by and
        about the client ID, and within its lifetime. None when it passes, else Entra ID's error."""
        form, correlation_id = request.form, request.correlation_id
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return error(
                400,
                "invalid_request",
                AADSTS_ASSERTION_TYPE,
                "The client_assertion_type must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
                correlation_id,
            )
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return error(400, "invalid_request", 50027, "Invalid JWT token. The token is malformed.", correlation_id)
        thumbprints = {name: header.get(name) for name in ("x5t#S256", "x5t") if isinstance(header.get(name), str)}
        certificate = next(
            (
                certificate
                for certificate in app.registered_certificates
                for name, value in thumbprints.items()
                if value.rstrip("=") == _thumbprint(certificate, name)
            ),
            None,
        )
        used = next(iter(thumbprints.values()), "")
        if certificate is None:
            return error(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not registered on application."
                f" [Reason - The key was not found., Thumbprint of key used by client: '{used}', Please visit the"
                " Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id"
                f" '{app.client_id}'.]",
                correlation_id,
            )
        endpoint = "/oauth2/v2.0/token" if version == "2.0" else "/oauth2/token"
        audiences = [f"{request.origin}/{name}{endpoint}" for name in {tenant, tenant_id}]
        try:
            claims = jwt.decode(
                assertion,
                certificate.public_key(),
                algorithms=["RS256", "PS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return error(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The key was found but the signature"
                f" does not verify with it., Thumbprint of key used by client: '{used}']",
                correlation_id,
            )
        if claims.get("aud") not in audiences:
            return error(
                401,
                "invalid_client",
                700023,
                f"Client assertion audience claim does not match Realm issuer. Review the documentation at"
                f" https://aka.ms/certCreds . Audience: '{claims.get('aud')}'.",
                correlation_id,
            )
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            return error(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter. Review the"
                " documentation at https://aka.ms/certCreds .",
                correlation_id,
            )
        now = time.time()
        expires, not_before = claims.get("exp"), claims.get("nbf", claims.get("iat", now))
        if (
            not isinstance(expires, int | float)
            or not isinstance(not_before, int | float)
            or expires < now - ASSERTION_SKEW
            or not_before > now + ASSERTION_SKEW
        ):
            return error(
                401,
                "invalid_client",
                700024,
                f"Client assertion is not within its valid time range. Current time: {_stamp(now)}, assertion valid"
                f" from {_stamp(not_before)}, expiry time of assertion {_stamp(expires)}. Review the documentation"
                " at https://aka.ms/certCreds .",
                correlation_id,
            )
        return None

    def missing(self, parameter, correlation_id):
        return error(
            400,
            "invalid_request",
            900144,
            f"The request body must contain the following parameter: '{parameter}'.",
            correlation_id,
        )

    def unknown_resource(self, resource, correlation_id):
        return error(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named {self.data.tenant_name}."
            f" {NOT_INSTALLED}",
            correlation_id,
        )

    def resource_from_scope(self, scope_text, correlation_id):
        requested = [s for s in scope_text.split() if s.lower() not in RESERVED_SCOPES]
        if not requested:
            return error(
                400,
                "invalid_scope",
                70011,
                "The provided request must include a 'scope' input parameter.",
                correlation_id,
            )
        invalid = (
            f"The provided value for the input parameter 'scope' is not valid. The scope {' '.join(requested)} is not"
            " valid."
        )
        if len(requested) > 1:
            return error(400, "invalid_scope", 70011, invalid, correlation_id)
        scope = requested[0]
        if not scope.lower().endswith("/.default"):
            if "://" not in scope and not GUID.match(scope.split("/")[0]):
                return error(400, "invalid_scope", 70011, invalid, correlation_id)
            return error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value"
                " with /.default suffixed to the resource identifier (application ID URI).",
                correlation_id,
            )
        resource = scope[: -len("/.default")]
        api = scopes.api_for(resource)
        if api is None:
            return self.unknown_resource(resource, correlation_id)
        if api == scopes.SIEM:
            # The SIEM exporter's Azure AD Graph tokens come from the v1 endpoint only.
            return error(400, "invalid_scope", 70011, invalid, correlation_id)
        return resource.rstrip("/")

    def resource_from_form(self, resource, correlation_id):
        if not resource:
            return self.missing("resource", correlation_id)
        if scopes.api_for(resource) is None:
            return self.unknown_resource(resource, correlation_id)
        return resource.rstrip("/")

    def issue(self, app, tenant_id, resource, version, origin):
        lifetime = int(self.simulator.token_lifetime)
        now = int(time.time())
        api = scopes.api_for(resource)
        roles = sorted(set(app.roles) & scopes.ROLES_BY_API[api])
        service_principal = str(uuid.uuid5(uuid.UUID(tenant_id), app.client_id))
        claims = {
            "aud": resource,
            "iss": f"{origin}/{tenant_id}/v2.0" if version == "2.0" else f"https://sts.windows.net/{tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "idp": f"https://sts.windows.net/{tenant_id}/",
            "oid": service_principal,
            "sub": service_principal,
            "tid": tenant_id,
            "uti": uuid.uuid4().hex[:22],
            "ver": version,
        }
        if version == "2.0":
            claims.update(azp=app.client_id, azpacr="1")
        else:
            claims.update(appid=app.client_id, appidacr="1")
        if roles:
            # Entra ID leaves the claim out when the app holds no role on the resource; the API answers 403 later.
            claims["roles"] = roles
        token = self.simulator.signer.sign(claims)
        if version == "2.0":
            body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": 0, "access_token": token}
        else:
            body = {
                "token_type": "Bearer",
                "expires_in": str(lifetime),
                "ext_expires_in": str(lifetime),
                "expires_on": str(now + lifetime),
                "not_before": str(now),
                "resource": resource,
                "access_token": token,
            }
        return Reply(200, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})
