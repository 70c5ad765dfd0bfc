// Webhook URLs that point inside are refused as soon as an endpoint is created or its URL
// changed, when that needs no DNS: an IP literal that is not public (in any of its forms) or a
// localhost name answers WEBHOOK_URL_NOT_ALLOWED (422). A convenience only: delivery checks every
// address again, names included, and is what keeps webhooks out (src/webhooks/destination.ts).
// Off when WEBHOOK_ALLOW_PRIVATE_NETWORKS is on.
//
// How: the plans of the mutations that set a URL run a side-effect step first, which throws for
// such a URL; Grafast then runs none of the field's later steps (the insert or update).
import { SafeError, sideEffect } from 'postgraphile/grafast';
import { refusedLiteralHost } from '../webhooks/destination.ts';

export const WEBHOOK_URL_NOT_ALLOWED = 'WEBHOOK_URL_NOT_ALLOWED';
export const WEBHOOK_URL_NOT_ALLOWED_STATUS = 422;

/** Where each mutation that sets a webhook URL carries it. */
const URL_ARGUMENT: Record<string, string[]> = {
  createWebhookEndpoint: ['input', 'url'],
  updateWebhookEndpoint: ['input', 'patch', 'url'],
  updateWebhookEndpointById: ['input', 'patch', 'url'],
};

/** Throws WEBHOOK_URL_NOT_ALLOWED for a URL whose host is, without resolving anything, not public. */
export function checkWebhookUrl(url: unknown): void {
  if (typeof url !== 'string') return;
  let hostname: string;
  try {
    hostname = new URL(url).hostname;
  } catch {
    return; // not a URL: the table's check constraint answers
  }
  const refused = refusedLiteralHost(hostname);
  if (refused) {
    throw new SafeError(`${refused}: webhooks reach only public addresses.`, { code: WEBHOOK_URL_NOT_ALLOWED, httpStatus: WEBHOOK_URL_NOT_ALLOWED_STATUS });
  }
}

export function makeWebhookUrlPlugin(allowPrivateNetworks: boolean): GraphileConfig.Plugin {
  return {
    name: 'AtriumWebhookUrlPlugin',
    version: '1.0.0',
    description: 'Refuses webhook URLs at internal IP literals when an endpoint is created or changed',
    schema: {
      hooks: {
        GraphQLObjectType_fields_field(field, _build, context) {
          const path = context.scope.isRootMutation ? URL_ARGUMENT[context.scope.fieldName] : undefined;
          const plan = field.plan;
          if (allowPrivateNetworks || !path || !plan) return field;
          return {
            ...field,
            plan($parent, fieldArgs, info) {
              sideEffect(fieldArgs.getRaw(path), checkWebhookUrl);
              return plan($parent, fieldArgs, info);
            },
          };
        },
      },
    },
  };
}
