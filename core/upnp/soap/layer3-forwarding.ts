import { UpnpError, UpnpErrorCode } from '../../errors.js';
import type { LAYER3_FORWARDING } from '../description/services.js';
import type { ActionHandlers } from './control.js';

/**
 * Layer3Forwarding:1. There is exactly one connection service, so the default can only be set to
 * what it already is. `defaultConnectionService` is `<WANConnectionDevice UDN>:WANConnectionDevice:<v>,<serviceId>`.
 */
export function layer3ForwardingHandlers(defaultConnectionService: string): ActionHandlers<typeof LAYER3_FORWARDING> {
  return {
    GetDefaultConnectionService: () => ({ NewDefaultConnectionService: defaultConnectionService }),
    SetDefaultConnectionService: ({ args }) => {
      if (args.string('NewDefaultConnectionService').trim() !== defaultConnectionService) {
        throw new UpnpError(UpnpErrorCode.InvalidArgs, `the only connection service is ${defaultConnectionService}`);
      }
    },
  };
}
