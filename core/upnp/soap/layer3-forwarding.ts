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
      // "<device UDN>:WANConnectionDevice:<v>,<serviceId>": a wrong device is 720, a wrong service 721.
      const [device = '', service = ''] = args.string('NewDefaultConnectionService').trim().split(',');
      const [ourDevice, ourService] = defaultConnectionService.split(',');
      if (device !== ourDevice) throw new UpnpError(UpnpErrorCode.InvalidDeviceUUID, `the only connection device is ${ourDevice}`);
      if (service !== ourService) throw new UpnpError(UpnpErrorCode.InvalidServiceID, `the only connection service is ${ourService}`);
    },
  };
}
