/**
 * The kubernetes-models interfaces of every kind the overlays render, keyed "apiVersion/Kind". schema-fields.ts
 * walks these types with the TypeScript checker to find fields the Kubernetes API does not define.
 */
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IStatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import type { INetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import type { IPodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { INamespace } from "kubernetes-models/v1/Namespace";
import type { ISecret } from "kubernetes-models/v1/Secret";
import type { IService } from "kubernetes-models/v1/Service";

export interface RenderedKinds {
  "v1/Namespace": INamespace;
  "v1/ConfigMap": IConfigMap;
  "v1/Secret": ISecret;
  "v1/Service": IService;
  "apps/v1/StatefulSet": IStatefulSet;
  "apps/v1/Deployment": IDeployment;
  "networking.k8s.io/v1/NetworkPolicy": INetworkPolicy;
  "policy/v1/PodDisruptionBudget": IPodDisruptionBudget;
}
