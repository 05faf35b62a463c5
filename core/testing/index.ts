import 'reflect-metadata';
export {
  describeBackendConformance,
  type BackendUnderTest,
  CONFORMANCE_CLIENT,
  CONFORMANCE_OTHER_CLIENT,
  CONFORMANCE_REMOTE_HOST,
} from './backend-conformance.js';
export { backendFromSpec, type TestServices } from './backend-from-spec.js';
