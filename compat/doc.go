// Package compat is stepflow's KubeVela compatibility suite. It holds no code: its test runs
// the cases of testdata/*.txtar, each a KubeVela behaviour named by a row of
// docs/kubevela-compatibility.md, on a real API server, in Kubernetes mode (the controller)
// and in embedded mode (the engine over SQLite, as `stepflow run` and the server use it).
//
// # A case
//
// A case is a txtar archive. Its comment says which KubeVela behaviour it checks; its
// sections are:
//
//   - definitions.yaml: WorkflowStepDefinitions (multi-document YAML), put in the case's
//     namespace.
//   - objects.yaml: objects created in the case's namespace before the run. A Pod is then
//     reported running with its containers started, as its node's kubelet would report it.
//   - pod-logs/<pod>/<container>: the lines of that container's log, served by the kubelet
//     stand-in (below), one line of the section a line of the log.
//   - job-pod-logs: the lines of the log of every container of the pods the stand-in makes
//     for Jobs (below).
//   - run.yaml: the WorkflowRun.
//   - want: what the run must end as (YAML):
//     phase (required); message, a regular expression the run's message must match;
//     steps, a step's phase by name, or "phase/reason" (failed/Timeout) to check the reason
//     too; outputs, the value of a run variable (JSON) by name; log, by step, regular
//     expressions that entries of the step's log (stepflow logs) must match, in that order,
//     with other entries allowed between them; logNot, by step, regular expressions that no
//     entry of the step's log may match.
//
// # Placeholders
//
// Every section may use these ${NAME}s, replaced before it is read; any other ${NAME} of
// capital letters is an error:
//
//   - ${HTTPS_URL}: the URL of an HTTPS service on loopback that accepts only clients with a
//     certificate its test CA signed, and answers only requests with the header
//     "Authorization: Bearer ${HTTPS_TOKEN}": 200 and "hello <client certificate's common
//     name> at <path>" (the client certificate's is compat-client), else 401.
//   - ${HTTPS_TOKEN}: the token that service wants.
//   - ${CA_CRT}, ${CLIENT_CRT}, ${CLIENT_KEY}: the CA's certificate and the client's
//     certificate and key, PEM base64-encoded once more, which is the form KubeVela's
//     tls_config reads from a Secret's data (put them in a Secret's stringData).
//   - ${KUBELET_NODE}: the Node whose kubelet is the stand-in, for a Pod's spec.nodeName.
//
// # Stand-ins
//
// What cannot run here is stood in for, and named so in the test:
//
//   - the kubelet: apiservertest.Kubelet, a loopback HTTPS server registered as the kubelet
//     endpoint of the Node ${KUBELET_NODE} (InternalIP 127.0.0.1), answering the kubelet's
//     containerLogs API. The API server really proxies pods/log to it.
//   - the kube-controller-manager and the kubelet's status reports: the namespace's
//     Deployments are marked ready, its Jobs complete and KubeVela's Applications (a stand-in
//     CRD) running, 1.5 s after they are first seen; a Job gets its pod, <job>-pod, on the
//     stand-in's node at once, with job-pod-logs as its containers' logs.
package compat
