package deploycheck

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// CRDs are the custom resource definitions of the operators the manifests use, one schema per served
// version, validated the way the Kubernetes API server validates a create: unknown fields (those its
// pruning would drop) are errors, then defaults apply, then the OpenAPI schema, embedded object metadata,
// list-type invariants and x-kubernetes-validations (CEL) rules are checked.
type CRDs map[schema.GroupVersionKind]*crdSchema

// crdSchema is one served version of a CRD.
type crdSchema struct {
	crd        string // the CRD's name, for messages
	namespaced bool
	structural *structuralschema.Structural
	validator  validation.SchemaValidator
	cel        *cel.Validator
}

// LoadCRDs reads every CustomResourceDefinition in the .yaml and .yaml.gz files under dir (multi-document
// files allowed); other kinds in those files are ignored.
func LoadCRDs(dir string) (CRDs, error) {
	crds := CRDs{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (!strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yaml.gz")) {
			return err
		}
		docs, err := readYAMLDocuments(path)
		if err != nil {
			return err
		}
		for _, doc := range docs {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.Unmarshal(doc, &crd); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			if err := crds.add(&crd); err != nil {
				return fmt.Errorf("%s: CRD %s: %w", path, crd.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading CRDs: %w", err)
	}
	return crds, nil
}

// readYAMLDocuments splits a YAML file, gzip-compressed when its name ends in .gz, into its documents.
func readYAMLDocuments(path string) (docs [][]byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer func() { err = errors.Join(err, zr.Close()) }()
		r = zr
	}
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// add keeps the schema of every served version of crd.
func (c CRDs) add(crd *apiextensionsv1.CustomResourceDefinition) error {
	for _, v := range crd.Spec.Versions {
		if !v.Served {
			continue
		}
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			return fmt.Errorf("version %s has no openAPIV3Schema", v.Name)
		}
		var props apiextensions.JSONSchemaProps
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &props, nil); err != nil {
			return fmt.Errorf("version %s: converting the schema: %w", v.Name, err)
		}
		structural, err := structuralschema.NewStructural(&props)
		if err != nil {
			return fmt.Errorf("version %s: %w", v.Name, err)
		}
		if errs := structuralschema.ValidateStructural(nil, structural); len(errs) > 0 {
			return fmt.Errorf("version %s: schema is not structural: %w", v.Name, errs.ToAggregate())
		}
		validator, _, err := validation.NewSchemaValidator(&props)
		if err != nil {
			return fmt.Errorf("version %s: %w", v.Name, err)
		}
		gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
		c[gvk] = &crdSchema{crd: crd.Name, namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped, structural: structural,
			validator: validator, cel: cel.NewValidator(structural, true, celconfig.PerCallLimit)}
	}
	return nil
}

// Has reports whether a CRD defines the kind of apiVersion.
func (c CRDs) Has(apiVersion, kind string) bool {
	_, ok := c[schema.FromAPIVersionAndKind(apiVersion, kind)]
	return ok
}

// Validate validates a custom object (its JSON or YAML) as the API server validates a create of it, and returns
// its problems; an object of a kind no CRD defines is one. The object itself is not changed.
func (c CRDs) Validate(src []byte) []string {
	// Decoded as the API server decodes a request: whole numbers are int64, which CEL rules compare.
	var obj map[string]any
	js, err := yaml.YAMLToJSON(src)
	if err == nil {
		err = utiljson.Unmarshal(js, &obj)
	}
	if err != nil {
		return []string{fmt.Sprintf("decoding: %v", err)}
	}
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	s, ok := c[schema.FromAPIVersionAndKind(apiVersion, kind)]
	if !ok {
		return []string{fmt.Sprintf("no CRD in testdata/crds serves %s %s", apiVersion, kind)}
	}
	var out []string
	meta, _ := obj["metadata"].(map[string]any)
	_, hasNamespace := meta["namespace"]
	out = when(out, s.namespaced && !hasNamespace, "metadata.namespace: not set on a namespaced %s", kind)
	out = when(out, !s.namespaced && hasNamespace, "metadata.namespace: set on a cluster-scoped %s", kind)

	obj = runtime.DeepCopyJSON(obj)
	unknown := pruning.PruneWithOptions(obj, s.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, p := range unknown {
		out = append(out, fmt.Sprintf("%s: unknown field (the API server drops it)", p))
	}
	if err := schemaobjectmeta.Coerce(nil, obj, s.structural, true, false); err != nil {
		out = append(out, err.Error())
	}
	defaulting.Default(obj, s.structural)
	var errs field.ErrorList
	errs = append(errs, validation.ValidateCustomResource(nil, obj, s.validator)...)
	errs = append(errs, schemaobjectmeta.Validate(context.Background(), nil, obj, s.structural, false)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, s.structural, obj)...)
	if len(errs) == 0 {
		celErrs, _ := s.cel.Validate(context.Background(), nil, s.structural, obj, nil, celconfig.RuntimeCELCostBudget)
		errs = append(errs, celErrs...)
	}
	for _, e := range errs {
		out = append(out, e.Error())
	}
	slices.Sort(out)
	return out
}

// CustomObjectProblems validates every object of the manifests that is not of a built-in API group
// (core, apps, batch, ...: groups without a dot, or *.k8s.io) against its CRD, and names the object in each
// problem.
func (c CRDs) CustomObjectProblems(m *Manifests) (out []string) {
	for _, o := range m.Objects {
		group, _, _ := strings.Cut(o.APIVersion, "/")
		if !strings.Contains(o.APIVersion, "/") || !strings.Contains(group, ".") || strings.HasSuffix(group, ".k8s.io") {
			continue
		}
		for _, p := range c.Validate(o.JSON) {
			out = append(out, fmt.Sprintf("%s: %s", o, p))
		}
	}
	return out
}
