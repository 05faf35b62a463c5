import { stateVariableOf, type ActionSpec, type ServiceAtVersion, type StateVariable } from './service-model.js';
import { XML_DECLARATION, element, textElement } from './xml.js';

/** The service description (SCPD, UDA 1.1 §2.5) of one version of a service: exactly what is dispatched. */
export function renderScpd(service: ServiceAtVersion, configId?: number): string {
  const configIdAttribute = configId === undefined ? '' : ` configId="${configId}"`;
  return [
    XML_DECLARATION,
    `<scpd xmlns="urn:schemas-upnp-org:service-1-0"${configIdAttribute}>`,
    element('specVersion', [textElement('major', 1), textElement('minor', 1)]),
    element(
      'actionList',
      service.actions.map((action) => renderAction(service, action)),
    ),
    element('serviceStateTable', service.stateVariables.map(renderStateVariable)),
    '</scpd>',
    '',
  ].join('\n');
}

function renderAction(service: ServiceAtVersion, action: ActionSpec): string {
  const argument = (direction: 'in' | 'out') => (a: ActionSpec['in'][number]) => {
    stateVariableOf(service, a);
    return element('argument', [textElement('name', a.name), textElement('direction', direction), textElement('relatedStateVariable', a.stateVariable)]);
  };
  const args = [...action.in.map(argument('in')), ...action.out.map(argument('out'))];
  return element('action', [textElement('name', action.name), ...(args.length > 0 ? [element('argumentList', args)] : [])]);
}

function renderStateVariable(variable: StateVariable): string {
  const children = [textElement('name', variable.name), textElement('dataType', variable.dataType)];
  if (variable.allowedValues)
    children.push(
      element(
        'allowedValueList',
        variable.allowedValues.map((v) => textElement('allowedValue', v)),
      ),
    );
  if (variable.range) {
    children.push(element('allowedValueRange', [textElement('minimum', variable.range.minimum), textElement('maximum', variable.range.maximum)]));
  }
  return `<stateVariable sendEvents="${variable.evented ? 'yes' : 'no'}">${children.join('')}</stateVariable>`;
}
